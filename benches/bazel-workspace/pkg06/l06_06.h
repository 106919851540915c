#ifndef PKG06_L06_06_H
#define PKG06_L06_06_H
#include <string>
#include <vector>

namespace l06_06 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_06

#endif
