#ifndef PKG06_L06_08_H
#define PKG06_L06_08_H
#include <string>
#include <vector>

namespace l06_08 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_08

#endif
