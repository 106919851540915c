#ifndef PKG06_L06_00_H
#define PKG06_L06_00_H
#include <string>
#include <vector>

namespace l06_00 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_00

#endif
