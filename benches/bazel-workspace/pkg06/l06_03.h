#ifndef PKG06_L06_03_H
#define PKG06_L06_03_H
#include <string>
#include <vector>

namespace l06_03 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_03

#endif
