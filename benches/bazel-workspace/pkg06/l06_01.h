#ifndef PKG06_L06_01_H
#define PKG06_L06_01_H
#include <string>
#include <vector>

namespace l06_01 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_01

#endif
