#ifndef PKG06_L06_05_H
#define PKG06_L06_05_H
#include <string>
#include <vector>

namespace l06_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l06_05

#endif
